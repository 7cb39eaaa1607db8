"""The Telegram side: the adapter (adapter.py), pacing sends below Telegram's flood limits
(pacing.py) and who may change alerts in a group (admins.py)."""
