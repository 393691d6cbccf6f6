"""Infrastructure below the apps: cache tiers, rate limits, the client address behind proxies,
the database router, the Redis breaker, flash-message storage, secret redaction in logged paths,
the API's error contract and the big-list admin helpers. Nothing here imports an app of ours, so
every app may use it."""
