"""Building, loading and holding the models: configs, safe checkpoint loading, the bounded cache."""
