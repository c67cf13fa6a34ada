"""A named lease: work that one replica at a time should do (housekeeping), held while renewed."""

from __future__ import annotations

from sqlalchemy import or_, select

from monolith.store.database import Database, epoch_now
from monolith.store.tables import leases


class Lease:
    def __init__(self, db: Database, name: str, owner: str, ttl_s: float) -> None:
        self.db = db
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s

    async def hold(self) -> bool:
        """Takes the lease if it is free or ran out, renews it if this owner has it; whether it does now."""
        now = epoch_now()
        claim = self.db.insert(leases).values(name=self.name, owner=self.owner, expires_at=now + self.ttl_s)
        claim = claim.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={"owner": self.owner, "expires_at": now + self.ttl_s},
            where=or_(leases.c.owner == self.owner, leases.c.expires_at < now),
        )
        async with self.db.begin() as conn:
            await conn.execute(claim)
            holder = (await conn.execute(select(leases.c.owner).where(leases.c.name == self.name))).scalar()
        return holder == self.owner

    async def release(self) -> None:
        async with self.db.begin() as conn:
            await conn.execute(leases.delete().where(leases.c.name == self.name, leases.c.owner == self.owner))
