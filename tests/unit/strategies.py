"""Hypothesis strategies for labels, shared by every property test.

Two kinds, on purpose:
- *configured* labels (what a LabelPolicy or the chart's `label.*` holds) are only ever
  valid Kubernetes labels, because the server and the chart refuse anything else at
  startup; a property test that draws an invalid one tests a state that cannot happen
  (and `jsonpatch` refuses a path ending in `-`, a key no policy can hold);
- *existing* Pod labels may be anything a client sends, because mutating admission
  runs before validation; they include the `/` and `~` that JSON Pointer must escape.

The syntax is Kubernetes' own (k8s.io/apimachinery/pkg/util/validation): a key is an
optional DNS-1123 subdomain prefix of at most 253 characters and `/`, then a name of
at most 63 alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric;
a value is empty or such a name.
"""

from __future__ import annotations

from hypothesis import strategies as st

NAME_MAX = 63
PREFIX_MAX = 253

# A label name, and a non-empty label value: 1 to 63 characters.
label_names = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", fullmatch=True)
# One DNS-1123 label (at most 63 characters); a subdomain is some of them joined by dots.
_dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
dns_subdomains = (
    st.lists(_dns_labels, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda prefix: len(prefix) <= PREFIX_MAX)
)

# Valid label keys (with and without a prefix) and values (the empty one included).
label_keys = st.one_of(label_names, st.tuples(dns_subdomains, label_names).map("/".join))
label_values = st.one_of(st.just(""), label_names)

# What a policy may be configured with: one to four valid labels.
configured_labels = st.dictionaries(label_keys, label_values, min_size=1, max_size=4)

# Existing label keys: any string, often short ones made of the characters that need
# escaping in a JSON Pointer, and sometimes valid keys (which may collide with ours).
existing_keys = st.one_of(
    st.text(alphabet=st.sampled_from("ab/~01.-_"), min_size=1, max_size=8),
    st.text(),
    label_keys,
)
existing_labels = st.dictionaries(existing_keys, st.text(max_size=8), max_size=6)


def labels_around(ours: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """Valid label maps that often share keys, and sometimes values, with `ours`: what a
    Pod brings to a policy configured with `ours` (the chart's CEL tests use it)."""
    keys = st.one_of(st.sampled_from(sorted(ours)), label_keys)
    values = st.one_of(st.sampled_from(sorted(ours.values())), label_values)
    return st.dictionaries(keys, values, max_size=6)
