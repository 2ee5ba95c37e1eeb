"""The shared generation engine: sampling, seeds, progress, windowed token generation and decoding."""
