"""Make the demo daemon's SQLite store refuse writes, or accept them again (e2e "saved").

    python tests/e2e/store_outage.py <database> fail|recover

Triggers that abort every insert into the update log and the snapshots table, created from
another connection: the daemon's next append fails as on a broken disk (a StoreError), and
the store works again as soon as they are dropped. Nothing else in the file is touched.
"""

from __future__ import annotations

import sqlite3
import sys

TABLES = ("realtime_update_log", "realtime_snapshots")


def main() -> None:
    database, action = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(database, timeout=10)
    try:
        for table in TABLES:
            name = f"e2e_outage_{table}"
            if action == "fail":
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'simulated outage: the disk refuses writes'); END"
                )
            elif action == "recover":
                conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            else:
                raise SystemExit(f"unknown action {action!r}")
        conn.commit()
    finally:
        conn.close()


if __name__ == "__main__":
    main()
