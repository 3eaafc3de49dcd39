"""Services the hotline talks to."""
