"""DuckDB baseline of the benchmark runner's query suite.

Reads a JSON job on stdin: {"threads": N, "repeat": R, "tables": {name: parquet path},
"queries": {name: sql}} and prints one JSON object: {name: median milliseconds}. Tables are views
over the Parquet files, so every run reads the files, as DataFusion does on the other side.
"""

import json
import statistics
import sys
import time

import duckdb


def main() -> None:
    job = json.load(sys.stdin)
    connection = duckdb.connect()
    connection.execute(f"SET threads TO {int(job['threads'])}")
    for name, path in job["tables"].items():
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    medians = {}
    for name, sql in job["queries"].items():
        connection.execute(sql).fetchall()  # warm the file metadata, as on the other side
        samples = []
        for _ in range(int(job["repeat"])):
            started = time.perf_counter()
            connection.execute(sql).fetchall()
            samples.append((time.perf_counter() - started) * 1e3)
        medians[name] = statistics.median(samples)
    json.dump({"duckdb_version": duckdb.__version__, "medians_ms": medians}, sys.stdout)


if __name__ == "__main__":
    main()
