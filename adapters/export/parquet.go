package export

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
)

// ParquetOptions tune a Parquet writer.
type ParquetOptions struct {
	// RowGroupRows bounds a row group, and so the rows of each event type
	// held in memory at once; default 100000.
	RowGroupRows int64
}

// Parquet writes one Parquet file per event type into a directory, named
// after the type's short name (DangerDetected.parquet), or its fully
// qualified name when another known type shares the short name. Each row
// is one event: the envelope columns of JSONL (seq, index, commit_id,
// event_id, stream, type, occurred_at, recorded_at, actor, source,
// correlation_id, causation_id; timestamps as TIMESTAMP) and then the
// payload's fields as typed, nullable columns named after the proto
// fields: integers, floats, booleans and strings as such, bytes as binary,
// enums as their value's name, google.protobuf.Timestamp as TIMESTAMP,
// other singular messages flattened (parent_child), and repeated fields
// and maps as JSON text. A payload field named like an envelope column is
// prefixed data_. Pages are zstd-compressed.
type Parquet struct {
	dir   string
	opts  ParquetOptions
	types map[string]*typeFile
	order []*typeFile
}

var _ Writer = (*Parquet)(nil)

// NewParquet returns a Parquet writer into dir, which it creates.
func NewParquet(dir string, opts ParquetOptions) (*Parquet, error) {
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = 100000
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export dir: %w", err)
	}
	return &Parquet{dir: dir, opts: opts, types: map[string]*typeFile{}}, nil
}

// rowBatch is how many rows a type file hands the parquet writer at once.
const rowBatch = 1024

// typeFile is the file of one event type.
type typeFile struct {
	file *atomicFile
	pw   *parquet.Writer
	cols []column
	rows []parquet.Row
	vals []parquet.Value // backing of rows
}

// column is one leaf column: its name, its node, and how it reads its
// value (ok false: null) from an event and its payload (nil: unknown type).
type column struct {
	name     string
	node     parquet.Node
	optional bool
	value    func(e *analyticsv1.RecordedEvent, m protoreflect.Message) (parquet.Value, bool)
}

// Write implements Writer.
func (p *Parquet) Write(e *analyticsv1.RecordedEvent) error {
	tf := p.types[e.Type]
	if tf == nil {
		var err error
		if tf, err = p.open(e.Type); err != nil {
			return err
		}
	}
	var m protoreflect.Message
	if pm, ok := payload(e); ok {
		m = pm.ProtoReflect()
	}
	for i, c := range tf.cols {
		v, ok := c.value(e, m)
		def := 0
		if ok && c.optional {
			def = 1
		}
		if !ok {
			v = parquet.NullValue()
		}
		tf.vals = append(tf.vals, v.Level(0, def, i))
	}
	n := len(tf.cols)
	tf.rows = append(tf.rows, tf.vals[len(tf.vals)-n:len(tf.vals):len(tf.vals)])
	if len(tf.rows) == rowBatch {
		return tf.flush()
	}
	return nil
}

func (tf *typeFile) flush() error {
	if len(tf.rows) == 0 {
		return nil
	}
	if _, err := tf.pw.WriteRows(tf.rows); err != nil {
		return fmt.Errorf("write %s: %w", tf.file.path, err)
	}
	tf.rows, tf.vals = tf.rows[:0], tf.vals[:0]
	return nil
}

// open starts the file of event type typ.
func (p *Parquet) open(typ string) (*typeFile, error) {
	name := typ
	var md protoreflect.MessageDescriptor
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ)); err == nil {
		md = mt.Descriptor()
		name = FileName(md)
	}
	cols := schemaColumns(md)
	group := parquet.Group{}
	for _, c := range cols {
		group[c.name] = c.node
	}
	f, err := createFile(filepath.Join(p.dir, name+".parquet"))
	if err != nil {
		return nil, err
	}
	tf := &typeFile{file: f, cols: cols, rows: make([]parquet.Row, 0, rowBatch), vals: make([]parquet.Value, 0, rowBatch*len(cols))}
	tf.pw = parquet.NewWriter(f, parquet.NewSchema(name, group), parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(p.opts.RowGroupRows), parquet.CreatedBy("tideline", "export", ""))
	p.types[typ] = tf
	p.order = append(p.order, tf)
	return tf, nil
}

// Close implements Writer.
func (p *Parquet) Close() ([]string, error) {
	var paths []string
	for _, tf := range p.order {
		err := tf.flush()
		if err == nil {
			err = tf.pw.Close()
		}
		if err == nil {
			err = tf.file.commit()
		}
		if err != nil {
			p.Abort()
			return nil, err
		}
		paths = append(paths, tf.file.path)
	}
	return paths, nil
}

// Abort implements Writer.
func (p *Parquet) Abort() {
	for _, tf := range p.order {
		tf.file.abort()
	}
}

// FileName is the name (without extension) of md's Parquet file: its
// short name, or its fully qualified name when another tideline.* type
// has the same short name.
func FileName(md protoreflect.MessageDescriptor) string {
	short := md.Name()
	shared := false
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		d := mt.Descriptor()
		if d.Name() == short && d.FullName() != md.FullName() && strings.HasPrefix(string(d.FullName()), "tideline.") {
			shared = true
			return false
		}
		return true
	})
	if shared {
		return string(md.FullName())
	}
	return string(short)
}

// payload unpacks e's data; ok is false when it has none or its type is
// not known to this binary.
func payload(e *analyticsv1.RecordedEvent) (proto.Message, bool) {
	if e.Data == nil {
		return nil, false
	}
	m, err := e.Data.UnmarshalNew()
	return m, err == nil
}

// envelopeColumns are every file's first columns.
func envelopeColumns() []column {
	str := func(name string, get func(*analyticsv1.RecordedEvent) string) column {
		return column{name: name, node: parquet.String(), value: func(e *analyticsv1.RecordedEvent, _ protoreflect.Message) (parquet.Value, bool) {
			return parquet.ByteArrayValue([]byte(get(e))), true
		}}
	}
	return []column{
		{name: "seq", node: parquet.Uint(64), value: func(e *analyticsv1.RecordedEvent, _ protoreflect.Message) (parquet.Value, bool) {
			return parquet.Int64Value(int64(e.GetPosition().GetSeq())), true
		}},
		{name: "index", node: parquet.Uint(32), value: func(e *analyticsv1.RecordedEvent, _ protoreflect.Message) (parquet.Value, bool) {
			return parquet.Int32Value(int32(e.GetPosition().GetIndex())), true
		}},
		str("commit_id", func(e *analyticsv1.RecordedEvent) string { return e.CommitId }),
		str("event_id", func(e *analyticsv1.RecordedEvent) string { return e.EventId }),
		str("stream", func(e *analyticsv1.RecordedEvent) string { return e.Stream }),
		str("type", func(e *analyticsv1.RecordedEvent) string { return e.Type }),
		{name: "occurred_at", node: parquet.Timestamp(parquet.Microsecond), value: func(e *analyticsv1.RecordedEvent, _ protoreflect.Message) (parquet.Value, bool) {
			return parquet.Int64Value(e.OccurredAt.AsTime().UnixMicro()), true
		}},
		{name: "recorded_at", node: parquet.Timestamp(parquet.Microsecond), value: func(e *analyticsv1.RecordedEvent, _ protoreflect.Message) (parquet.Value, bool) {
			return parquet.Int64Value(e.RecordedAt.AsTime().UnixMicro()), true
		}},
		str("actor", func(e *analyticsv1.RecordedEvent) string { return e.Actor }),
		str("source", func(e *analyticsv1.RecordedEvent) string { return e.Source }),
		str("correlation_id", func(e *analyticsv1.RecordedEvent) string { return e.CorrelationId }),
		str("causation_id", func(e *analyticsv1.RecordedEvent) string { return e.CausationId }),
	}
}

// maxDepth bounds how deep nested messages are flattened; deeper ones
// (and recursive ones) become JSON text.
const maxDepth = 4

// schemaColumns returns the columns of a file of md's events (nil md: an
// unknown type, the envelope only), sorted by name as parquet.Group
// orders them.
func schemaColumns(md protoreflect.MessageDescriptor) []column {
	cols := envelopeColumns()
	taken := map[string]bool{}
	for _, c := range cols {
		taken[c.name] = true
	}
	if md != nil {
		var payloadCols []column
		flatten(md, "", nil, 0, &payloadCols)
		for _, c := range payloadCols {
			for taken[c.name] {
				c.name = "data_" + c.name
			}
			taken[c.name] = true
			cols = append(cols, c)
		}
	}
	for i := range cols {
		if cols[i].optional {
			cols[i].node = parquet.Optional(cols[i].node)
		}
	}
	sortColumns(cols)
	return cols
}

func sortColumns(cols []column) {
	for i := 1; i < len(cols); i++ { // insertion sort: a few dozen columns
		for j := i; j > 0 && cols[j].name < cols[j-1].name; j-- {
			cols[j], cols[j-1] = cols[j-1], cols[j]
		}
	}
}

// flatten adds md's fields as columns named prefix + field name, read
// through the message fields of path.
func flatten(md protoreflect.MessageDescriptor, prefix string, path []protoreflect.FieldDescriptor, depth int, out *[]column) {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := prefix + string(fd.Name())
		fpath := append(append([]protoreflect.FieldDescriptor(nil), path...), fd)
		switch {
		case fd.IsList() || fd.IsMap():
			*out = append(*out, leaf(name, parquet.String(), fpath, jsonValue))
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			sub := fd.Message()
			switch {
			case sub.FullName() == "google.protobuf.Timestamp":
				*out = append(*out, leaf(name, parquet.Timestamp(parquet.Microsecond), fpath, timestampValue))
			case depth+1 >= maxDepth || sub.FullName() == md.FullName():
				*out = append(*out, leaf(name, parquet.String(), fpath, jsonValue))
			default:
				flatten(sub, name+"_", fpath, depth+1, out)
			}
		default:
			*out = append(*out, leaf(name, scalarNode(fd), fpath, scalarValue))
		}
	}
}

// leaf is the column of the field at the end of path; it is null when a
// message on the way is absent, or the field has presence and is unset.
func leaf(name string, node parquet.Node, path []protoreflect.FieldDescriptor,
	read func(fd protoreflect.FieldDescriptor, v protoreflect.Value) parquet.Value) column {
	fd := path[len(path)-1]
	return column{name: name, node: node, optional: true, value: func(_ *analyticsv1.RecordedEvent, m protoreflect.Message) (parquet.Value, bool) {
		if m == nil {
			return parquet.Value{}, false
		}
		for _, p := range path[:len(path)-1] {
			if !m.Has(p) {
				return parquet.Value{}, false
			}
			m = m.Get(p).Message()
		}
		if fd.HasPresence() && !m.Has(fd) {
			return parquet.Value{}, false
		}
		return read(fd, m.Get(fd)), true
	}}
}

func scalarNode(fd protoreflect.FieldDescriptor) parquet.Node {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return parquet.Leaf(parquet.BooleanType)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return parquet.Int(32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return parquet.Uint(32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return parquet.Int(64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return parquet.Uint(64)
	case protoreflect.FloatKind:
		return parquet.Leaf(parquet.FloatType)
	case protoreflect.DoubleKind:
		return parquet.Leaf(parquet.DoubleType)
	case protoreflect.BytesKind:
		return parquet.Leaf(parquet.ByteArrayType)
	}
	return parquet.String() // string, enum
}

func scalarValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) parquet.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return parquet.BooleanValue(v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return parquet.Int32Value(int32(v.Int()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return parquet.Int32Value(int32(uint32(v.Uint())))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return parquet.Int64Value(v.Int())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return parquet.Int64Value(int64(v.Uint()))
	case protoreflect.FloatKind:
		return parquet.FloatValue(float32(v.Float()))
	case protoreflect.DoubleKind:
		return parquet.DoubleValue(v.Float())
	case protoreflect.BytesKind:
		return parquet.ByteArrayValue(v.Bytes())
	case protoreflect.EnumKind:
		return parquet.ByteArrayValue([]byte(enumName(fd, v.Enum())))
	}
	return parquet.ByteArrayValue([]byte(v.String()))
}

// enumName is an enum value's name, or its number for a value this
// binary does not know.
func enumName(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) string {
	if ev := fd.Enum().Values().ByNumber(n); ev != nil {
		return string(ev.Name())
	}
	return strconv.Itoa(int(n))
}

func timestampValue(_ protoreflect.FieldDescriptor, v protoreflect.Value) parquet.Value {
	m := v.Message()
	fs := m.Descriptor().Fields()
	secs, nanos := m.Get(fs.ByName("seconds")).Int(), m.Get(fs.ByName("nanos")).Int()
	return parquet.Int64Value(secs*1e6 + nanos/1e3)
}

func jsonValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) parquet.Value {
	var b []byte
	switch {
	case fd.IsList():
		b = jsonList(fd, v.List())
	case fd.IsMap():
		b = jsonMap(fd, v.Map())
	default:
		b = jsonSingle(fd, v)
	}
	return parquet.ByteArrayValue(b)
}

func jsonList(fd protoreflect.FieldDescriptor, l protoreflect.List) []byte {
	b := []byte{'['}
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, jsonSingle(fd, l.Get(i))...)
	}
	return append(b, ']')
}

func jsonMap(fd protoreflect.FieldDescriptor, m protoreflect.Map) []byte {
	b := []byte{'{'}
	first := true
	m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		if !first {
			b = append(b, ',')
		}
		first = false
		key, _ := json.Marshal(k.String())
		b = append(append(b, key...), ':')
		b = append(b, jsonSingle(fd.MapValue(), v)...)
		return true
	})
	return append(b, '}')
}

// jsonSingle is one value of fd (an element, for a list) as JSON.
func jsonSingle(fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	var x any
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		b, err := payloadJSON.Marshal(v.Message().Interface())
		if err != nil {
			return []byte("null")
		}
		return b
	case protoreflect.EnumKind:
		x = enumName(fd, v.Enum())
	case protoreflect.BytesKind:
		x = v.Bytes()
	default:
		x = v.Interface()
	}
	b, err := json.Marshal(x)
	if err != nil {
		return []byte("null")
	}
	return b
}

// Of is the writer of format ("jsonl" or "parquet") to out: a file for
// JSON Lines ("-": w), a directory for Parquet.
func Of(format, out string, stdout io.Writer) (Writer, error) {
	switch format {
	case "jsonl":
		if out == "-" {
			return NewJSONLTo(stdout), nil
		}
		return NewJSONL(out)
	case "parquet":
		if out == "-" {
			return nil, fmt.Errorf("parquet writes one file per event type: --out names a directory")
		}
		return NewParquet(out, ParquetOptions{})
	}
	return nil, fmt.Errorf("unknown format %q (want jsonl or parquet)", format)
}
