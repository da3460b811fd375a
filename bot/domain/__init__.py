"""Pure rules of Lifeguard. Standard library only: no Slack, Neon or database here."""
