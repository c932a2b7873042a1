"""Time to accuracy: real training with compressed gradients on K virtual workers."""
