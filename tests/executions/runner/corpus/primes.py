"""Count primes below a bound in parallel: processes (spawn and fork), threads and a
subprocess, the way a script on a laptop would."""

import concurrent.futures
import multiprocessing
import subprocess
import sys


def is_prime(n):
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def count(bounds):
    low, high = bounds
    return sum(1 for n in range(low, high) if is_prime(n))


def main():
    chunks = [(i, i + 2500) for i in range(0, 10000, 2500)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        spawned = sum(pool.map(count, chunks))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        forked = sum(pool.map(count, chunks))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as threads:
        threaded = sum(threads.map(count, chunks))
    child = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.version_info[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"spawn {spawned}, fork {forked}, threads {threaded}, python {child.stdout.strip()}")


if __name__ == "__main__":
    main()
