"""HookBridge."""
