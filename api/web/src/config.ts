// What the server tells the console at start (GET /console/config.json):
// map tiles, when `tideline serve --map-tiles URL` names some.
export interface Config {
  mapTiles: string;
  mapAttribution: string;
  version: string;
}

export const config: Config = { mapTiles: "", mapAttribution: "", version: "" };

export async function loadConfig(): Promise<void> {
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) Object.assign(config, await res.json());
  } catch {
    // Served without a config: no tiles.
  }
}
