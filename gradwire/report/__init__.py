"""Reports: terminal tables and the self-contained plotly dashboard, built from result rows only."""
