"""Provider clients: ``clients.get_client(account)`` returns the implementation for its
provider; ``google`` and ``microsoft`` speak the APIs, ``authorized`` refreshes tokens, ``oauth``
runs the authorization-code flow, ``errors`` maps answers to typed errors."""
