"""Ground truth: real torch.distributed runs over a shaped network, compared with predictions."""
