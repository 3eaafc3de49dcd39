"""Services the hotline talks to, and what they share with it (`offload`)."""
