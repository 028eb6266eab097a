"""medvit.data."""
