"""Deploy tools that drive a cloud's API from this machine (the server itself never imports them)."""
