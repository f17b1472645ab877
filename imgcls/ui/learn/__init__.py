"""The Learn page: inside the network, and the experiments."""
