"""A fake DNS, the far side of name resolution, for the webhook guard's tests: no test needs
the network, and a name can be made to resolve anywhere (a public address, a loopback one)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class FakeDns(AbstractResolver):
    """Every name resolves to `addresses`, except those listed in `names`; a name listed with
    no address does not exist."""

    def __init__(self, *addresses: str, names: dict[str, tuple[str, ...]] | None = None) -> None:
        self.addresses = addresses or ("127.0.0.1",)
        self.names = names or {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.names.get(host, self.addresses)
        if not addresses:
            raise OSError(f"{host}: no such host")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None
