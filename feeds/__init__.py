"""Price sources: the Feed protocol, ccxt, yfinance and replay feeds, the symbol catalogue."""
