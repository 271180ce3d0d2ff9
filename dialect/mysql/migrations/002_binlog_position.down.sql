DROP TABLE IF EXISTS {{.Sibling "_binlog"}};
