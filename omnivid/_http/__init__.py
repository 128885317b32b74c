"""HTTP to the providers: the transport (:mod:`.transport`), its retry policy (:mod:`.retry`),
the per-account gate with the rate limit and 429 cooldown (:mod:`.gate`), result downloads
(:mod:`.download`), and where an account's API lives (:mod:`.endpoint`)."""
