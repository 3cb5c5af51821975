"""Model definitions: causal Wan DiT, Wan VAE, text encoders."""
