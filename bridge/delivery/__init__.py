"""From a stored delivery to a signed POST: dispatch, send, auth, target guard, pipe."""
