"""A typed function script: JSON in, JSON out."""

from typing import Literal


def main(name: str, times: int = 1, style: Literal["plain", "shout"] = "plain") -> dict:
    """Greet someone.

    Args:
        name: Who to greet.
        times: How many greetings (1-10).
        style: "plain" or "shout".
    """
    greeting = f"Hello, {name}!"
    if style == "shout":
        greeting = greeting.upper()
    return {"greetings": [greeting] * max(1, min(times, 10))}


if __name__ == "__main__":
    print(main("world"))
