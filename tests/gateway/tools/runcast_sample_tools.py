"""A tools module as an application would write it (imported by name in the registry tests)."""

from __future__ import annotations

from gateway.tools import tool


@tool
def get_weather(city: str) -> dict[str, object]:
    return {"city": city, "temp_c": 4}


@tool(name="lookup_customer")
async def find_customer(customer_id: str) -> str:
    return f"customer {customer_id}"


weather_alias = get_weather


def not_a_tool() -> None:
    """Unmarked functions are ignored."""
