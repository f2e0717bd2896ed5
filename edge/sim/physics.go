package sim

import "math"

// vec is a 3-vector; mat a rotation matrix taking device coordinates to
// world coordinates (x east-ish along the heading, y left, z up).
type (
	vec [3]float64
	mat [3][3]float64
)

func ident() mat { return mat{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}} }

func rotX(a float64) mat {
	c, s := math.Cos(a), math.Sin(a)
	return mat{{1, 0, 0}, {0, c, -s}, {0, s, c}}
}

func rotY(a float64) mat {
	c, s := math.Cos(a), math.Sin(a)
	return mat{{c, 0, s}, {0, 1, 0}, {-s, 0, c}}
}

func rotZ(a float64) mat {
	c, s := math.Cos(a), math.Sin(a)
	return mat{{c, -s, 0}, {s, c, 0}, {0, 0, 1}}
}

func (m mat) mul(n mat) mat {
	var r mat
	for i := range 3 {
		for j := range 3 {
			r[i][j] = m[i][0]*n[0][j] + m[i][1]*n[1][j] + m[i][2]*n[2][j]
		}
	}
	return r
}

func (m mat) t() mat {
	var r mat
	for i := range 3 {
		for j := range 3 {
			r[i][j] = m[j][i]
		}
	}
	return r
}

func (m mat) apply(v vec) vec {
	return vec{
		m[0][0]*v[0] + m[0][1]*v[1] + m[0][2]*v[2],
		m[1][0]*v[0] + m[1][1]*v[1] + m[1][2]*v[2],
		m[2][0]*v[0] + m[2][1]*v[1] + m[2][2]*v[2],
	}
}

// expm is the rotation by the rotation vector w (radians), Rodrigues' formula.
func expm(w vec) mat {
	th := norm(w)
	if th < 1e-12 {
		return ident()
	}
	k := scale(w, 1/th)
	c, s := math.Cos(th), math.Sin(th)
	v := 1 - c
	return mat{
		{c + k[0]*k[0]*v, k[0]*k[1]*v - k[2]*s, k[0]*k[2]*v + k[1]*s},
		{k[1]*k[0]*v + k[2]*s, c + k[1]*k[1]*v, k[1]*k[2]*v - k[0]*s},
		{k[2]*k[0]*v - k[1]*s, k[2]*k[1]*v + k[0]*s, c + k[2]*k[2]*v},
	}
}

// logm is the rotation vector of m (radians), the inverse of expm.
func logm(m mat) vec {
	c := (m[0][0] + m[1][1] + m[2][2] - 1) / 2
	th := math.Acos(max(-1, min(1, c)))
	w := vec{m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]}
	if th < 1e-9 {
		return scale(w, 0.5)
	}
	s := math.Sin(th)
	if s < 1e-6 { // a half turn: take the axis from the diagonal
		k := vec{math.Sqrt(max(0, (m[0][0]+1)/2)), math.Sqrt(max(0, (m[1][1]+1)/2)), math.Sqrt(max(0, (m[2][2]+1)/2))}
		if m[0][1] < 0 {
			k[1] = -k[1]
		}
		if m[0][2] < 0 {
			k[2] = -k[2]
		}
		return scale(k, th)
	}
	return scale(w, th/(2*s))
}

// slerp goes from a (u=0) to b (u=1) along the shortest rotation.
func slerp(a, b mat, u float64) mat { return a.mul(expm(scale(logm(a.t().mul(b)), u))) }

func norm(v vec) float64 { return math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2]) }

func scale(v vec, k float64) vec { return vec{v[0] * k, v[1] * k, v[2] * k} }

func add(a, b vec) vec { return vec{a[0] + b[0], a[1] + b[1], a[2] + b[2]} }

func unit(v vec) vec { return scale(v, 1/norm(v)) }

// ease rises smoothly from 0 at u<=0 to 1 at u>=1.
func ease(u float64) float64 {
	u = max(0, min(1, u))
	return (1 - math.Cos(math.Pi*u)) / 2
}

// pulse is a half sine of width 1 starting at u=0, zero outside.
func pulse(u float64) float64 {
	if u < 0 || u > 1 {
		return 0
	}
	return math.Sin(math.Pi * u)
}

func rad(deg float64) float64 { return deg * math.Pi / 180 }

func deg(rad float64) float64 { return rad * 180 / math.Pi }
