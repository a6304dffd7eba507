"""The lindung command."""
