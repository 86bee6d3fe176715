"""Child process for the multi-process PostgreSQL tests (run as a script, not collected).

Modes:
  append URL SESSION COUNT TAG   append COUNT events one by one, then exit
  crash URL                      create an active session with a running run, print
                                 "ready <session> <run>", then append forever printing
                                 "ack <event id> <seq>" after each acknowledged append
  serve URL SESSION              for each stdin line append one event and print "ack <id> <seq>"
"""

from __future__ import annotations

import sys

import anyio

from agent_session_manager.core import Event, EventType, Run, RunStatus, Session, SessionStatus
from agent_session_manager.stores.postgres import PostgresSessionStore


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def append(url: str, session_id: str, count: int, tag: str) -> None:
    async with await PostgresSessionStore.connect(url) as store:
        for i in range(count):
            await store.append_event(
                Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"w": tag, "i": i})
            )


async def crash(url: str) -> None:
    store = await PostgresSessionStore.connect(url)
    session = Session(agent_id="crashy", status=SessionStatus.ACTIVE)
    await store.save_session(session)
    run = Run(session_id=session.id).with_status(RunStatus.RUNNING)
    await store.save_run(run)
    say(f"ready {session.id} {run.id}")
    i = 0
    while True:
        stored = await store.append_event(
            Event(type=EventType.MESSAGE_STREAMED, session_id=session.id, run_id=run.id, data={"i": i})
        )
        say(f"ack {stored.id} {stored.sequence_number}")
        i += 1


async def serve(url: str, session_id: str) -> None:
    async with await PostgresSessionStore.connect(url) as store:
        for _line in sys.stdin:
            stored = await store.append_event(Event(type=EventType.MESSAGE_RECEIVED, session_id=session_id))
            say(f"ack {stored.id} {stored.sequence_number}")


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "append":
        anyio.run(append, url, rest[0], int(rest[1]), rest[2])
    elif mode == "crash":
        anyio.run(crash, url)
    elif mode == "serve":
        anyio.run(serve, url, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
