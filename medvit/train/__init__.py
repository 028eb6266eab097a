"""medvit.train."""
