"""From a validated provider request to a stored notification row, in one statement; what is
refused is counted and rate limited, and unknown channels are recorded as orphans."""
