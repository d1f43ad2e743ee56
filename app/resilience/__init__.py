"""How the gateway rides out failing providers and leaving clients.

Small value objects built once from the settings and shared by every thread
(``RetryPolicy``, ``BreakerPolicy``), plus the per-worker state they drive
(``Breakers``, ``DisconnectWatcher``). The pipeline applies them; nothing
here does HTTP itself.
"""
