"""Traffic generators and the counters read around them."""
