// Charts (uPlot) and the danger map (Leaflet): made once per mount,
// updated in place with each new answer, sized to their container.
import { useEffect, useRef } from "preact/hooks";
import uPlot, { type AlignedData, type Options } from "uplot";
import L from "leaflet";
import type { HeatMap } from "./gen/tideline/dashboard/v1/dashboard_pb";
import { config } from "./config";

export function Chart({ opts, data, label }: { opts: Omit<Options, "width" | "height">; data: AlignedData; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = JSON.stringify(opts.series.map((s) => s.label));
  useEffect(() => {
    const el = box.current!;
    const u = new uPlot({ ...opts, width: el.clientWidth || 300, height: 220 } as Options, data, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: el.clientWidth || 300, height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [key]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return <div class="chart" ref={box} role="img" aria-label={label} />;
}

export const bars = uPlot.paths.bars!({ size: [0.7, 40] });

// heatColour runs from pale yellow (few) to deep red (the busiest cell).
function heatColour(f: number): string {
  const h = 55 - 55 * f;
  return `hsl(${h} 90% ${60 - 25 * f}%)`;
}

export function HeatMapView({ heat }: { heat: HeatMap | undefined }) {
  const box = useRef<HTMLDivElement>(null);
  const map = useRef<L.Map | null>(null);
  const layer = useRef<L.LayerGroup | null>(null);
  const moved = useRef(false); // the user has panned or zoomed: keep their view
  const fitting = useRef(false);
  useEffect(() => {
    const m = L.map(box.current!, { center: [37.5665, 126.978], zoom: 11, attributionControl: !!config.mapTiles, keyboard: true });
    if (config.mapTiles) {
      L.tileLayer(config.mapTiles, { maxZoom: 19, attribution: config.mapAttribution }).addTo(m);
    }
    L.control.scale({ metric: true, imperial: false }).addTo(m);
    layer.current = L.layerGroup().addTo(m);
    m.on("dragstart zoomstart", () => {
      if (!fitting.current) moved.current = true;
    });
    map.current = m;
    // The card changes size with the window (phone, desktop): redraw and refit.
    const ro = new ResizeObserver(() => {
      m.invalidateSize({ animate: false });
      fit();
    });
    ro.observe(box.current!);
    return () => {
      ro.disconnect();
      m.remove();
      map.current = null;
    };
  }, []);
  const cellBounds = useRef<L.LatLngBounds | null>(null);
  function fit() {
    const m = map.current;
    if (!m || moved.current || !cellBounds.current) return;
    fitting.current = true;
    m.fitBounds(cellBounds.current.pad(0.2), { maxZoom: 15, animate: false });
    fitting.current = false;
  }
  useEffect(() => {
    const m = map.current;
    const g = layer.current;
    if (!m || !g || !heat) return;
    g.clearLayers();
    const max = Math.max(1, ...heat.cells.map((c) => c.count));
    const d = heat.cellDeg || 0.01;
    const bounds: L.LatLngBoundsExpression[] = [];
    for (const c of heat.cells) {
      const b: L.LatLngBoundsExpression = [[c.lat, c.lng], [c.lat + d, c.lng + d]];
      bounds.push(b);
      L.rectangle(b, { weight: 0.5, color: "#7a1f1f", fillColor: heatColour(c.count / max), fillOpacity: 0.75 })
        .bindTooltip(`${c.count}`)
        .addTo(g);
    }
    cellBounds.current = heat.cells.length > 0 ? L.latLngBounds(bounds.flatMap((b) => b as L.LatLngTuple[])) : null;
    fit();
  }, [heat]);
  return <div class={config.mapTiles ? "map" : "map plain"} ref={box} />;
}
