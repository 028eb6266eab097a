"""medvit.io."""
