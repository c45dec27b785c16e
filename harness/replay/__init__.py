"""Replay support: the events-table contract shared by every backend (samplers and labels come later)."""
