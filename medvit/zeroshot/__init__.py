"""medvit.zeroshot."""
