"""nas: agent search spaces, compressed layers and the single-path Gumbel-softmax supernet."""
