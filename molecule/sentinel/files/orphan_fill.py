#!/usr/bin/env python3
"""Molecule helper, run in the lab container: a dead consumer holding a LARGE pending list, fast.

  orphan_fill.py PORT STREAM GROUP CONSUMER COUNT

COUNT decisions are added to STREAM and delivered to CONSUMER (a consumer of GROUP that will
never acknowledge them: a crashed worker of an old deployment), in one MULTI: the XADDs and
one XREADGROUP COUNT COUNT, so the live consumer, blocked on the stream, cannot take any of
them (it is served after EXEC, from the group's cursor, which is then past them all). `qt-lab
orphan` does the same at the producer's pace (2/s); this takes about a second for 20,000.
Waits until the replica has them (WAIT), then prints one JSON object: how many the consumer
holds, the first and last id, and the seconds it took.
"""

from __future__ import annotations

import json
import random
import sys
import time

import redis


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    port, stream, group, consumer, count = int(argv[0]), argv[1], argv[2], argv[3], int(argv[4])
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=60)
    started = time.monotonic()
    pipe = r.pipeline(transaction=True)
    for seq in range(count):
        pipe.xadd(
            stream,
            {
                "symbol": random.choice(("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")),
                "action": random.choice(("BUY", "SELL")),
                "confidence": f"{random.uniform(0.55, 0.99):.2f}",
                "qty": "0.001",
                "ts": f"{time.time():.3f}",
                "seq": f"orphan-{seq}",
            },
        )
    pipe.xreadgroup(group, consumer, {stream: ">"}, count=count)
    *added, delivered = pipe.execute()
    held = [entry_id for entry_id, _ in delivered[0][1]] if delivered else []
    replicas = r.execute_command("WAIT", 1, 10000)
    pending = next(int(c["pending"]) for c in r.xinfo_consumers(stream, group) if c["name"] == consumer)
    print(
        json.dumps(
            {
                "consumer": consumer,
                "added": len(added),
                "delivered": len(held),
                "pending": pending,
                "first_id": held[0] if held else None,
                "last_id": held[-1] if held else None,
                "replicas_acked": replicas,
                "seconds": round(time.monotonic() - started, 2),
            },
            sort_keys=True,
        )
    )
    return 0 if pending >= count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
