"""Values and vocabulary every floor shares: the spec and its records, statuses, money, settings, paths, errors."""
