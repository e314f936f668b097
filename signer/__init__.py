"""Release-engineering side of pumpguard: keys, the TUF repository, release bundles."""
