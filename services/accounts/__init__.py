"""The account service: accounts, cards, transactions, contributions."""
