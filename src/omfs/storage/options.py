"""The storage options that may travel and be shown: an allow-list, never a deny-list.

A context's storage options hold both where the data is (an endpoint, a region) and who
you are (keys, tokens). Only the first kind is pickled into Dask tasks or printed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLIC_OPTION_KEYS", "public_options"]

#: Storage options known to be safe to pickle into Dask tasks and to show: where the data
#: is and how to talk to it, never who you are. Every other option (``key``, ``secret``,
#: ``token``, ``credential``, ``connection_string``, ``account_key``, ``sas_token``, any
#: option a backend adds later) stays in the process that was given it.
PUBLIC_OPTION_KEYS = frozenset(
    {
        # s3fs
        "anon",
        "endpoint_url",
        "client_kwargs",
        "config_kwargs",
        "region_name",
        "use_ssl",
        "verify",
        "requester_pays",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "version_aware",
        "cache_regions",
        "use_listings_cache",
        "listings_expiry_time",
        "max_concurrency",
        "fixed_upload_size",
        "s3_additional_kwargs",
        "addressing_style",
        "profile",
        # gcsfs
        "project",
        "access",
        "consistency",
        "requests_timeout",
        "endpoint",
        "default_location",
        # adlfs
        "account_name",
        "account_host",
        "blocksize",
        "location_mode",
        # omfs and fsspec in general
        "auto_mkdir",
        "skip_instance_cache",
    }
)
#: The safe keys inside ``client_kwargs`` and ``config_kwargs`` (boto client and config).
_NESTED_PUBLIC = frozenset(
    {
        "endpoint_url",
        "region_name",
        "verify",
        "use_ssl",
        "signature_version",
        "s3",
        "retries",
        "connect_timeout",
        "read_timeout",
        "max_pool_connections",
        "addressing_style",
        "max_attempts",
        "mode",
        "tcp_keepalive",
        "request_checksum_calculation",
        "response_checksum_validation",
    }
)


def public_options(options: dict[str, Any], *, _nested: bool = False) -> dict[str, Any]:
    """Return the options of ``options`` known to hold no credentials (an allow-list,
    applied inside ``client_kwargs`` and ``config_kwargs`` too)."""
    allowed = _NESTED_PUBLIC if _nested else PUBLIC_OPTION_KEYS
    return {
        key: public_options(value, _nested=True) if isinstance(value, dict) else value
        for key, value in options.items()
        if key in allowed
    }
