"""Target addresses, parsed once: URLs (credentials split off) and Temporal host:port.

The allow-list, the pre-run checks, the drivers, run.json and every message use these parsed
forms, so they cannot disagree on which host a URL names (`http://a.example\\@127.0.0.1` is
refused rather than read two ways), and a password in a URL is never written or printed.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

_FORBIDDEN = re.compile(r"[\s\\<>\"{}|^`]")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class AddressError(ValueError):
    """An address that cannot be used; the message says why in a few words."""


def _check_host(host: str) -> str:
    if not host:
        raise AddressError("no host")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise AddressError(f"'{host}' is not an IPv6 address") from None
        return host[1:-1]
    if not _HOST.match(host):
        raise AddressError(f"'{host}' is not a host name or address")
    return host.lower()


def _check_port(text: str) -> int:
    if not text.isdigit():
        raise AddressError(f"port '{text}' is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port {port} is outside 1-65535")
    return port


@dataclass(frozen=True)
class HttpUrl:
    """An http(s) URL split into what is sent where; `public` is safe to write or print."""

    scheme: str
    host: str
    port: int
    path: str
    query: str = ""
    username: str = ""
    password: str = ""

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def base(self) -> str:
        """scheme://host[:port], no credentials, no path."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def public(self) -> str:
        """The URL without credentials (a `***@` marks that there were some)."""
        marker = "***@" if self.username or self.password else ""
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{marker}{self.netloc}{self.path}{query}"

    @property
    def plain(self) -> str:
        """The URL to request: no credentials (they go in `basic_auth`)."""
        query = f"?{self.query}" if self.query else ""
        return f"{self.base}{self.path}{query}"

    def join(self, path: str) -> HttpUrl:
        """The same origin with another path (e.g. a health path)."""
        path, _, query = path.partition("?")
        return HttpUrl(
            self.scheme, self.host, self.port, path or "/", query, self.username, self.password
        )

    @property
    def basic_auth(self) -> str | None:
        """`Basic ...` for the URL's credentials, as Locust and browsers send them."""
        if not (self.username or self.password):
            return None
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def parse_http_url(text: str) -> HttpUrl:
    """Parse an http(s) URL strictly; AddressError says what is wrong (never echoing secrets)."""
    if not isinstance(text, str) or not text:
        raise AddressError("empty URL")
    if _FORBIDDEN.search(text):
        raise AddressError("the URL holds a space, backslash or other character URLs cannot carry")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise AddressError(f"expected an http(s) URL, got scheme '{parts.scheme or 'none'}'")
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and "@" in userinfo:
        raise AddressError("the URL's credentials hold an unescaped '@'")
    if not at:
        hostport = netloc
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise AddressError("unclosed '[' in the host")
        host_text, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise AddressError(f"unexpected '{rest}' after the host")
        port_text = rest[1:] if rest else ""
    else:
        host_text, colon, port_text = hostport.partition(":")
        if colon and not port_text:
            raise AddressError("empty port")
    host = _check_host(host_text)
    port = _check_port(port_text) if port_text else (443 if parts.scheme == "https" else 80)
    user, _, password = userinfo.partition(":")
    return HttpUrl(
        scheme=parts.scheme,
        host=host,
        port=port,
        path=parts.path or "/",
        query=parts.query,
        username=unquote(user),
        password=unquote(password),
    )


def parse_host_port(text: str) -> tuple[str, int]:
    """A Temporal frontend address: `host:port` or `[v6]:port` (the port is required)."""
    if not isinstance(text, str) or not text or _FORBIDDEN.search(text) or "/" in text:
        raise AddressError("expected host:port")
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise AddressError("expected [IPv6]:port")
        return _check_host(text[: end + 1]), _check_port(text[end + 2 :])
    host, colon, port = text.rpartition(":")
    if not colon:
        raise AddressError("expected host:port (the port is missing)")
    if ":" in host:
        raise AddressError("an IPv6 address needs brackets: [::1]:7233")
    return _check_host(host), _check_port(port)


def redact(text: str) -> str:
    """Any `scheme://user:password@` in free text with the credentials replaced by `***`."""
    return re.sub(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]*@", r"\1***@", text, flags=re.I)


def quote_path(path: str) -> str:
    return quote(path, safe="/:@!$&'()*+,;=-._~%")
