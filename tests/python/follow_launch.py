"""A program that is not tgp: launch an instance and follow its events with nats-py, using only
docs/events.md. Run: python3 follow_launch.py nats://127.0.0.1:4222 client.nk (a `tgp run` must be
up; client.nk is the seed file of the `client` role's nkey, see docs/security.md).
Exits non-zero, saying why, if anything is not as the document says."""

import asyncio
import json
import sys
import uuid

import nats
from nats.js.api import DeliverPolicy


async def request(nc, subject, body):
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    answer = json.loads(reply.data)
    if "error" in answer:
        raise SystemExit(f"{subject} answered an error: {answer['error']}")
    return answer


async def follow(js, instance_id, until):
    """Yields event types of the instance from its first, until `until` is seen."""
    subject = f"tgp.events.instance.{instance_id}"
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    seen = []
    try:
        while until not in seen:
            msg = await sub.next_msg(timeout=15)
            commit = json.loads(msg.data)
            assert commit["aggregate_id"] == instance_id, commit
            assert msg.headers["Tgp-Aggregate-Id"] == instance_id, msg.headers
            for event in commit["events"]:
                if event["version"] > 1:
                    raise SystemExit(f"unknown schema version {event['version']}")
                seen.append(event["type"])
                print(f"{instance_id}: {event['sequence']} {event['type']}", flush=True)
                if event["type"] == "Running":
                    conn = event["data"]["connection"]
                    print(f"  connect: ssh -p {conn['ssh_port']} {conn['ssh_user']}@{conn['ssh_host']}")
    finally:
        await sub.unsubscribe()
    return seen


async def main(url, seed):
    nc = await nats.connect(url, nkeys_seed=seed)
    js = nc.jetstream()
    key = f"py-{uuid.uuid4().hex[:12]}"
    launch = {"gpu_type": "A100-80GB", "gpu_count": 1, "max_hourly_price": "2.50",
              "spot_policy": "on-demand-only", "idempotency_key": key}
    accepted = await request(nc, "tgp.api.launch", launch)
    assert accepted["instance_id"] == key, accepted

    seen = await follow(js, key, "Running")
    expected = ["LaunchRequested", "OfferSelected", "LaunchAttempted", "Launched", "Running"]
    if seen != expected:
        raise SystemExit(f"expected {expected}, saw {seen}")

    # The durable way: a terminate on the command stream.
    ack = await js.publish("tgp.commands.terminate", json.dumps({"instance_id": key}).encode())
    assert ack.stream == "TGP_COMMANDS", ack
    seen = await follow(js, key, "Terminated")
    if seen[-2:] != ["TerminationRequested", "Terminated"]:
        raise SystemExit(f"termination not journaled: {seen}")

    state = await request(nc, "tgp.api.get", {"instance_id": key})
    assert state["state"] == "terminated", state
    print("python subscriber: OK")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
