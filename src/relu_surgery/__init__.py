"""relu_surgery."""
