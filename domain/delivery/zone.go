package delivery

import "math"

// ZonePrecision is the geohash precision of a zone: 6 characters, a cell
// of 360/2^15 = 0.0110° of longitude × 180/2^15 = 0.0055° of latitude:
// 1.22 × 0.61 km at the equator, 0.97 × 0.61 km at Seoul (37.5°N).
const ZonePrecision = 6

const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// Zone returns the zone of a point: its standard geohash at ZonePrecision
// (e.g. "wydm9q" near Seoul City Hall). Geohash cells form a fixed
// worldwide grid, so a city is divided into zones without configuration,
// a zone id is a safe subject token, and neighbouring zones share
// prefixes (a 5-character prefix groups 32 zones into a ~4.9 × 4.9 km
// district). The point must be valid (see ValidateLatLng).
func Zone(lat, lng float64) string {
	var out [ZonePrecision]byte
	latLo, latHi := -90.0, 90.0
	lngLo, lngHi := -180.0, 180.0
	even := true // geohash interleaves bits starting with longitude
	for i := range out {
		var ch byte
		for bit := 4; bit >= 0; bit-- {
			if even {
				mid := (lngLo + lngHi) / 2
				if lng >= mid {
					ch |= 1 << bit
					lngLo = mid
				} else {
					lngHi = mid
				}
			} else {
				mid := (latLo + latHi) / 2
				if lat >= mid {
					ch |= 1 << bit
					latLo = mid
				} else {
					latHi = mid
				}
			}
			even = !even
		}
		out[i] = geohashAlphabet[ch]
	}
	return string(out[:])
}

// EarthRadiusM is the mean Earth radius used for every distance.
const EarthRadiusM = 6371008.8

// DistanceM returns the great-circle (haversine) distance in metres
// between two points given in degrees.
func DistanceM(lat1, lng1, lat2, lng2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLng := (lng2 - lng1) * rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLng/2)
	h := s1*s1 + math.Cos(lat1*rad)*math.Cos(lat2*rad)*s2*s2
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(h, 1)))
}
