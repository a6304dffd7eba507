"""Registration: the front door. Validates requests and registers each worker once per programme."""
