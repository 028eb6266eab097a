"""medvit.evaluate."""
