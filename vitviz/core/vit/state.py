"""What the ViT views show: layer, head, query, direction, and the method beside the raw attention."""
from __future__ import annotations

from dataclasses import dataclass

from ..figures import ExportError
from ..state import MethodChoice, ViewState, check_direction, check_layer, head_or_fusion

Query = object  # "cls" or (row, col)


@dataclass(frozen=True)
class ViTState(MethodChoice, ViewState):
    layer: int = -1  # negative counts from the end
    head: object = "mean"  # a head index, or "mean" | "max" | "min"
    query: Query = "cls"
    direction: str = "from"  # "from": the query's row (where it looks); "to": its column
    method: str = "rollout"  # the map shown beside the raw attention (vitviz.core.methods)
    method_params: tuple = ()  # (name, value) pairs of that method's parameters
    family = "vit"

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """vitviz <= 0.1 wrote rollout's parameters as rollout_fusion / discard_ratio."""
        if "rollout_fusion" in data or "discard_ratio" in data:
            if data.get("method", "rollout") == "rollout" and "method_params" not in data:
                data["method_params"] = {"head_fusion": data.get("rollout_fusion", "mean"),
                                         "discard_ratio": data.get("discard_ratio", 0.0)}
        data.pop("rollout_fusion", None)
        data.pop("discard_ratio", None)
        q = data.get("query")
        if isinstance(q, str):
            if q.lower() != "cls":
                raise ExportError(f"query must be 'cls' or [row, col], not {q!r}")
            data["query"] = "cls"
        return data

    def resolved(self, analysis) -> "ViTState":
        base = super().resolved(analysis)
        layer = check_layer(self.layer, analysis.num_layers)
        head = head_or_fusion(self.head, analysis.num_heads)
        query = self.query
        if query != "cls":
            try:
                query = tuple(int(v) for v in query)
                analysis.token_index(query)
            except (IndexError, ValueError, TypeError) as exc:
                raise ExportError(f"query: {exc}") from None
        method = self.method_decl()
        if "vit" not in method.families:
            raise ExportError(f"method {method.name!r} is not available for ViT models")
        try:
            params = method.resolve(self.params)
        except ValueError as exc:
            raise ExportError(f"{method.name}: {exc}") from None
        return base.replace(layer=layer, head=head, query=query, direction=check_direction(self.direction),
                            method_params=params)

    def carried_over(self, analysis) -> "ViTState":
        L, H = analysis.num_layers, analysis.num_heads
        layer = self.layer if -L <= self.layer < L else L - 1
        head = self.head if not isinstance(self.head, int) or 0 <= self.head < H else "mean"
        query = self.query
        if query != "cls" and not (query[0] < analysis.grid.rows and query[1] < analysis.grid.cols):
            query = "cls"
        params = dict(self.method_params)
        n = 0 if analysis.logits is None else len(analysis.logits)
        from ..methods.targets import is_text, takes_text

        for k in ("target", "contrast"):  # a class the new model does not have: back to the default
            if k in params and (not takes_text(analysis) if is_text(params[k]) else not -1 <= params[k] < n):
                params[k] = -1  # (a prompt is kept for the next CLIP image only)
        return self.replace(layer=layer, head=head, query=query, method_params=params)
