"""Faker providers for what Faker does not ship: product catalogue names and modern device user agents.

Written the way Faker's own providers are: data as class-level tuples, tiny methods, record builders that
call other methods. Used only while the entity universe is built (generator/universe.py), never per event.
"""

from __future__ import annotations

from faker.providers import BaseProvider


class CommerceProvider(BaseProvider):
    """Product names ("Ergonomic Bamboo Desk Lamp") and shelf prices (19.99, 4.49, 249.0)."""

    adjectives = (
        "Compact", "Deluxe", "Ergonomic", "Everyday", "Foldable", "Handcrafted", "Lightweight", "Modern",
        "Organic", "Portable", "Premium", "Rechargeable", "Rustic", "Sleek", "Smart", "Vintage", "Waterproof",
        "Wireless",
    )  # fmt: skip
    materials = (
        "Aluminium", "Bamboo", "Ceramic", "Cotton", "Glass", "Leather", "Linen", "Oak", "Recycled", "Silicone",
        "Stainless Steel", "Walnut", "Wool",
    )  # fmt: skip
    # (noun, typical price in whole currency units): a kettle costs more than a mug.
    products = (
        ("Backpack", 60), ("Blender", 80), ("Bookshelf", 150), ("Candle", 15), ("Chair", 120), ("Coffee Mug", 12),
        ("Cutting Board", 25), ("Desk Lamp", 45), ("Duvet Cover", 70), ("Headphones", 90), ("Jacket", 110),
        ("Kettle", 40), ("Keyboard", 65), ("Notebook", 8), ("Phone Case", 18), ("Plant Pot", 20), ("Rug", 130),
        ("Scarf", 30), ("Sneakers", 95), ("Speaker", 75), ("Sunglasses", 55), ("Tote Bag", 22), ("Wall Clock", 35),
        ("Water Bottle", 19), ("Watch", 180), ("Yoga Mat", 28),
    )  # fmt: skip
    # Shelf prices end like real ones do.
    price_endings = (0.99, 0.99, 0.99, 0.49, 0.95, 0.0)

    def product_name(self) -> str:
        noun, _ = self.random_element(self.products)
        return f"{self.random_element(self.adjectives)} {self.random_element(self.materials)} {noun}"

    def product(self) -> tuple[str, float]:
        """A (name, price) pair whose price fits the product: 0.5x to 2x its typical price, cents-rounded."""
        noun, typical = self.random_element(self.products)
        name = f"{self.random_element(self.adjectives)} {self.random_element(self.materials)} {noun}"
        whole = max(0, int(typical * (0.5 + 1.5 * self.generator.random.random())))
        return name, round(whole + self.random_element(self.price_endings), 2)


class DeviceProvider(BaseProvider):
    """User agents that match a platform: phones for mobile, tablets for tablet, desktop browsers for web.

    Faker's own user_agent() mixes in Windows 95 and Android 1.0 and can put a phone behind a desktop
    browser; traffic analysis by platform needs the agent and the platform to agree.
    """

    windows_tokens = ("Windows NT 10.0; Win64; x64",)
    mac_tokens = ("Macintosh; Intel Mac OS X 10_15_7", "Macintosh; Intel Mac OS X 14_4_1")
    linux_tokens = ("X11; Linux x86_64", "X11; Ubuntu; Linux x86_64")
    chrome_versions = ("120.0.0.0", "121.0.0.0", "122.0.0.0", "123.0.0.0", "124.0.0.0", "125.0.0.0")
    firefox_versions = ("121.0", "122.0", "123.0", "124.0", "125.0")
    safari_versions = ("16.6", "17.2", "17.3", "17.4")
    ios_versions = ("16_7_7", "17_2_1", "17_3_1", "17_4", "17_4_1")
    android_versions = ("12", "13", "14")
    android_phones = ("Pixel 7", "Pixel 8", "Pixel 8 Pro", "SM-S911B", "SM-S918B", "SM-A546B", "moto g84 5G")
    android_tablets = ("SM-X710", "SM-X810", "Lenovo TB-X606F", "Pixel Tablet")

    def desktop_user_agent(self) -> str:
        browser = self.random_element(("chrome", "chrome", "chrome", "firefox", "safari", "edge"))
        return getattr(self, f"_{browser}")()

    def mobile_user_agent(self) -> str:
        if self.generator.random.random() < 0.55:
            return self._android(self.random_element(self.android_phones), " Mobile")
        return self._ios("iPhone; CPU iPhone OS", " Mobile/15E148")

    def tablet_user_agent(self) -> str:
        if self.generator.random.random() < 0.6:
            return self._ios("iPad; CPU OS", " Mobile/15E148")
        return self._android(self.random_element(self.android_tablets), "")

    def _chrome(self) -> str:
        os_token = self.random_element(self.windows_tokens + self.mac_tokens + self.linux_tokens)
        version = self.random_element(self.chrome_versions)
        return f"Mozilla/5.0 ({os_token}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version} Safari/537.36"

    def _edge(self) -> str:
        version = self.random_element(self.chrome_versions)
        return (
            f"Mozilla/5.0 ({self.random_element(self.windows_tokens)}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{version} Safari/537.36 Edg/{version}"
        )

    def _firefox(self) -> str:
        version = self.random_element(self.firefox_versions)
        os_token = self.random_element(self.windows_tokens + self.linux_tokens)
        return f"Mozilla/5.0 ({os_token}; rv:{version}) Gecko/20100101 Firefox/{version}"

    def _safari(self) -> str:
        return (
            f"Mozilla/5.0 ({self.random_element(self.mac_tokens)}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{self.random_element(self.safari_versions)} Safari/605.1.15"
        )

    def _ios(self, device: str, mobile: str) -> str:
        ios = self.random_element(self.ios_versions)
        return (
            f"Mozilla/5.0 ({device} {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{ios.split('_')[0]}.0{mobile} Safari/604.1"
        )

    def _android(self, model: str, mobile: str) -> str:
        return (
            f"Mozilla/5.0 (Linux; Android {self.random_element(self.android_versions)}; {model}) "
            f"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{self.random_element(self.chrome_versions)}"
            f"{mobile} Safari/537.36"
        )
