"""A tools module as an application writes it, loaded by name (``runcast serve --tools``)."""

from __future__ import annotations

from gateway.tools import tool


@tool
def get_weather(city: str) -> dict[str, object]:
    return {"city": city, "forecast": "sunny", "temp_c": 21}


@tool(name="lookup_customer")
async def find_customer(customer_id: str) -> str:
    return f"customer {customer_id} is a gold member"
