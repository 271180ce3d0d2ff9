package mysql

import (
	"errors"
	"net"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
)

// DSNFromURL converts a URL of the form
//
//	mysql://user:password@host:port/database?param=value
//
// (the form the outbox command takes; mariadb:// is accepted too) into a DSN for Config.DSN.
// The host defaults to 127.0.0.1 and the port to 3306; socket=/path connects through a unix
// socket instead. Other parameters are the driver's (tls, timeout, interpolateParams...).
// Errors are *outbox.ConfigError for field database_url and never contain the password.
func DSNFromURL(raw string) (string, error) {
	bad := func(reason string) error { return &outbox.ConfigError{Field: "database_url", Reason: reason} }
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return "", bad("not a URL: " + err.Error())
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return "", bad("must start with mysql://")
	}
	if u.Opaque != "" {
		return "", bad("want mysql://user:password@host:port/database")
	}
	q := u.Query()
	socket := q.Get("socket")
	q.Del("socket")
	cfg, err := mysql.ParseDSN("/?" + q.Encode())
	if err != nil {
		return "", bad(err.Error())
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if strings.Contains(cfg.DBName, "/") {
		return "", bad("the path must be a single database name")
	}
	if socket != "" {
		cfg.Net, cfg.Addr = "unix", socket
	} else {
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "127.0.0.1"
		}
		if port == "" {
			port = "3306"
		}
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(host, port)
	}
	return cfg.FormatDSN(), nil
}
